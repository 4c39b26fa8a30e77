//! Auth tokens, their verification and the choice of auth method and framing
//!.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha3::{Digest, Sha3_512};
use subtle::ConstantTimeEq;

use super::HandshakeError;
use crate::codec::{Framing, STORABLE};

/// `hmac_sha3_512`: HMAC-SHA3-512 keyed with the shared secret.
pub const HMAC_SHA3_512: &str = "hmac_sha3_512";
/// `tls_sha3_512`: SHA3-512 of the greeting lines, only valid inside TLS.
pub const TLS_SHA3_512: &str = "tls_sha3_512";
/// `tls_anon`: empty token, only valid inside TLS; marks the connection untrusted.
pub const TLS_ANON: &str = "tls_anon";
/// `cleartext`: the hex of the secret itself. Perl accepts it but never sends it.
pub const CLEARTEXT: &str = "cleartext";

/// Every auth method of AnyEvent::MP 2.x, in the reference's default `auth_accept` order.
pub const AUTH_METHODS: [&str; 4] = [TLS_SHA3_512, HMAC_SHA3_512, TLS_ANON, CLEARTEXT];

/// The names of the framings this implementation can encode and decode ([`Framing::ALL`]), in
/// its order of preference. `storable` is Perl-only and is never offered or accepted.
pub const SUPPORTED_FRAMINGS: [&str; 2] = [Framing::ALL[0].name(), Framing::ALL[1].name()];

/// Every framing name of AnyEvent::MP 2.x: [`SUPPORTED_FRAMINGS`] and Perl's [`STORABLE`].
pub const KNOWN_FRAMINGS: [&str; 3] = [SUPPORTED_FRAMINGS[0], SUPPORTED_FRAMINGS[1], STORABLE];

/// SHA3-512's rate, which is the HMAC block size (Digest::HMAC in Perl uses the same).
const HMAC_BLOCK: usize = 72;

/// Bytes of randomness in a nonce line, as Perl sends (88 base64 characters).
pub const NONCE_BYTES: usize = 66;

/// A fresh nonce line: 66 bytes from the operating system's CSPRNG, standard base64 with
/// padding and no line breaks (88 characters), like Perl's `MIME::Base64::encode_base64($_, "")`.
///
/// The TLS role decision and Perl's echo check both rely on nonces differing, and Perl 2.x
/// uses a non-cryptographic source; a CSPRNG costs nothing here.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The four greeting lines of one connection as seen from one side, without line ends
/// (and without CR). They are the input of every token.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    /// Our line 1.
    pub own_l1: &'a str,
    /// Our line 2 (nonce).
    pub own_l2: &'a str,
    /// The peer's line 1.
    pub peer_l1: &'a str,
    /// The peer's line 2 (nonce).
    pub peer_l2: &'a str,
}

impl Transcript<'_> {
    /// `LOCAL = L1 \n L2 \n R1 \n R2 \n`: what the token we send covers.
    pub fn local(&self) -> Vec<u8> {
        join_lines(self.own_l1, self.own_l2, self.peer_l1, self.peer_l2)
    }

    /// `REMOTE = R1 \n R2 \n L1 \n L2 \n`: what the peer's token covers.
    pub fn remote(&self) -> Vec<u8> {
        join_lines(self.peer_l1, self.peer_l2, self.own_l1, self.own_l2)
    }
}

/// `a \n b \n c \n d \n` as bytes: every line followed by one LF, including the last.
fn join_lines(a: &str, b: &str, c: &str, d: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(a.len() + b.len() + c.len() + d.len() + 4);
    for line in [a, b, c, d] {
        msg.extend_from_slice(line.as_bytes());
        msg.push(b'\n');
    }
    msg
}

/// Lowercase hex of HMAC-SHA3-512 (RFC 2104, block size 72) over `msg`.
fn hmac_hex(secret: &[u8], msg: &[u8]) -> String {
    // RFC 2104 key preparation done here, so that the infallible block-sized `Mac::new` can
    // be used: a key longer than the block is replaced by its hash, and the key is then
    // zero-padded to the block size (which is what the padding step of HMAC does anyway).
    let mut key = hmac::digest::Key::<Hmac<Sha3_512>>::default();
    if secret.len() > HMAC_BLOCK {
        let digest = Sha3_512::digest(secret);
        key[..digest.len()].copy_from_slice(&digest);
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let mut mac = <Hmac<Sha3_512> as Mac>::new(&key);
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// The `hmac_sha3_512` token a side sends: lowercase hex of
/// HMAC-SHA3-512(secret, `own_l1 \n own_l2 \n peer_l1 \n peer_l2 \n`), 128 characters.
/// Swap own and peer lines to get the token expected from the peer.
pub fn hmac_sha3_512_token(
    secret: &[u8],
    own_l1: &str,
    own_l2: &str,
    peer_l1: &str,
    peer_l2: &str,
) -> String {
    hmac_hex(secret, &join_lines(own_l1, own_l2, peer_l1, peer_l2))
}

/// The `tls_sha3_512` token a side sends: lowercase hex of
/// SHA3-512(`own_l1 \n own_l2 \n peer_l1 \n peer_l2 \n`). Only meaningful inside TLS.
pub fn tls_sha3_512_token(own_l1: &str, own_l2: &str, peer_l1: &str, peer_l2: &str) -> String {
    hex::encode(Sha3_512::digest(join_lines(
        own_l1, own_l2, peer_l1, peer_l2,
    )))
}

/// The `cleartext` token: lowercase hex of the secret's bytes.
pub fn cleartext_token(secret: &[u8]) -> String {
    hex::encode(secret)
}

/// The token we send for `method` (one [`choose_auth`] returned).
///
/// Fails for methods we never send and for `hmac_sha3_512` without a non-empty secret.
pub fn own_token(
    method: &str,
    secret: Option<&[u8]>,
    lines: &Transcript<'_>,
) -> Result<String, HandshakeError> {
    match method {
        HMAC_SHA3_512 => match secret {
            Some(s) if !s.is_empty() => Ok(hmac_hex(s, &lines.local())),
            _ => Err(HandshakeError::NoSecret),
        },
        TLS_SHA3_512 => Ok(hex::encode(Sha3_512::digest(lines.local()))),
        TLS_ANON => Ok(String::new()),
        other => Err(HandshakeError::UnsupportedSendAuth {
            method: other.to_owned(),
            mode: "never sent",
        }),
    }
}

/// Checks the peer's auth token (fields 1 and 2 of its auth line), as Perl does but without
/// Perl's empty-secret weakness:
///
/// * `hmac_sha3_512`: HMAC over `REMOTE`; needs a non-empty secret.
/// * `cleartext`: hex of the secret; needs a non-empty secret (accepted with or without TLS).
/// * `tls_sha3_512`: SHA3-512 over `REMOTE`; only with `tls_active`.
/// * `tls_anon`: empty token; only with `tls_active`.
///
/// Tokens are compared as exact strings (so uppercase hex fails), in constant time.
/// Whether the method is in our `auth_accept` list is the caller's business.
pub fn verify(
    method: &str,
    token: &str,
    secret: Option<&[u8]>,
    tls_active: bool,
    lines: &Transcript<'_>,
) -> Result<(), HandshakeError> {
    let secret = secret.filter(|s| !s.is_empty());
    let expected = match method {
        HMAC_SHA3_512 => secret.map(|s| hmac_hex(s, &lines.remote())),
        CLEARTEXT => secret.map(cleartext_token),
        TLS_SHA3_512 => tls_active.then(|| hex::encode(Sha3_512::digest(lines.remote()))),
        TLS_ANON => tls_active.then(String::new),
        other => return Err(HandshakeError::UnsupportedAuthMethod(other.to_owned())),
    };
    match expected {
        // `ct_eq` on slices of different lengths is false without looking at the contents;
        // the lengths of the expected tokens are public anyway.
        Some(e) if bool::from(e.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        _ => Err(HandshakeError::AuthFailure),
    }
}

/// Picks the auth method we send (docs/protocol.md §1): the first entry of the *peer's* list that is in our
/// `local_offer` and, if it is a `tls_*` method, only when TLS is active. Then Perl's limits:
/// under TLS only `tls_sha3_512`/`tls_anon` can be sent; without TLS only `hmac_sha3_512`,
/// and only with a non-empty secret.
pub fn choose_auth<'a>(
    peer_list: &'a [String],
    local_offer: &[String],
    tls_active: bool,
    has_secret: bool,
) -> Result<&'a str, HandshakeError> {
    let chosen = peer_list
        .iter()
        .find(|m| local_offer.contains(m) && (tls_active || !m.starts_with("tls_")))
        .ok_or_else(|| {
            let tls_only = !peer_list.is_empty() && peer_list.iter().all(|m| m.starts_with("tls_"));
            if !tls_active && tls_only {
                HandshakeError::PeerRequiresTls(peer_list.join(","))
            } else {
                HandshakeError::NoCommonAuth(peer_list.join(","))
            }
        })?;
    if tls_active {
        if chosen == TLS_SHA3_512 || chosen == TLS_ANON {
            return Ok(chosen);
        }
        return Err(HandshakeError::UnsupportedSendAuth {
            method: chosen.clone(),
            mode: "with tls",
        });
    }
    if !has_secret {
        return Err(HandshakeError::NoSecret);
    }
    if chosen == HMAC_SHA3_512 {
        Ok(chosen)
    } else {
        Err(HandshakeError::UnsupportedSendAuth {
            method: chosen.clone(),
            mode: "without tls",
        })
    }
}

/// Picks the framing we send (docs/protocol.md §1): the first entry of the *peer's* list that is in
/// `local_list` and that we can actually encode (`cbor`, `json`).
pub fn choose_framing<'a>(
    peer_list: &'a [String],
    local_list: &[String],
) -> Result<&'a str, HandshakeError> {
    if let Some(f) = peer_list
        .iter()
        .find(|f| local_list.contains(f) && SUPPORTED_FRAMINGS.contains(&f.as_str()))
    {
        return Ok(f);
    }
    if peer_list
        .iter()
        .all(|f| !SUPPORTED_FRAMINGS.contains(&f.as_str()))
        && !peer_list.is_empty()
    {
        return Err(HandshakeError::PeerFramingsUnsupported(peer_list.join(",")));
    }
    Err(HandshakeError::NoCommonFraming {
        peer: peer_list.join(","),
        ours: local_list.join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference's worked example, secret `geheim`.
    const A1: &str = "aemp;1;rustnode;hmac_sha3_512,cleartext;json;provider=rust-0.1;peeraddr=127.0.0.1:4040;mproto=1;gproto=1";
    const A2: &str =
        "OQyMfXJHNCzYEA8vb3cNZdZw5Y4DUdiujk9urDQvwjG3sIcW6z/BKJa5YiMXdJQodzPCjui6U721a4gkV31T7MKK";
    const B1: &str = "aemp;1;perlnode;tls_sha3_512,hmac_sha3_512,tls_anon,cleartext;cbor,json,storable;provider=AE-2.02;peeraddr=127.0.0.1:53012;mproto=1;gproto=1";
    const B2: &str =
        "cKYcdRChzYkhbKFs/8rqSYdHfobbzLlwRvwuGDhOUdggxcPvgAU6iK45lt5Q6AGGWzaYZU6/UgCl+gk5uZ16HXso";

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn worked_example_tokens() {
        assert_eq!(
            hmac_sha3_512_token(b"geheim", A1, A2, B1, B2),
            "1672cbd1c0f91fdb4d0ad97c743972f243037c46ffaae355cbbbef42d17ebb78b7977649f3d7a15af779df5e61bbb38f0eeeb621c9ddf5ef5e4f43020a850fc4"
        );
        assert_eq!(
            hmac_sha3_512_token(b"geheim", B1, B2, A1, A2),
            "e6e1e2ad546d3d644d698c8bb1d96fd708e4108e4e5b158b411672f1c5a1f5ac550751dc46f8c1336615971c2ec95fe4d41578459498f4703a910c8d63905c72"
        );
        assert_eq!(cleartext_token(b"geheim"), "67656865696d");
        let tls = tls_sha3_512_token(A1, A2, B1, B2);
        assert!(
            tls.starts_with("0c6a8e3f") && tls.ends_with("93e9"),
            "{tls}"
        );
        assert_eq!(tls.len(), 128);
    }

    #[test]
    fn verify_rules() {
        let a = Transcript {
            own_l1: A1,
            own_l2: A2,
            peer_l1: B1,
            peer_l2: B2,
        };
        let b = Transcript {
            own_l1: B1,
            own_l2: B2,
            peer_l1: A1,
            peer_l2: A2,
        };
        let tok = own_token(HMAC_SHA3_512, Some(b"geheim"), &b).unwrap();
        assert_eq!(
            verify(HMAC_SHA3_512, &tok, Some(b"geheim"), false, &a),
            Ok(())
        );
        assert_eq!(
            verify(
                HMAC_SHA3_512,
                &tok.to_uppercase(),
                Some(b"geheim"),
                false,
                &a
            ),
            Err(HandshakeError::AuthFailure)
        );
        assert_eq!(
            verify(HMAC_SHA3_512, &tok, Some(b"geheim!"), false, &a),
            Err(HandshakeError::AuthFailure)
        );
        // No secret: nothing secret-based can verify, not even against an empty-key HMAC.
        let empty_key = hmac_sha3_512_token(b"", A1, A2, B1, B2);
        for secret in [None, Some(&b""[..])] {
            assert!(verify(HMAC_SHA3_512, &empty_key, secret, true, &a).is_err());
            assert!(verify(CLEARTEXT, "", secret, true, &a).is_err());
        }
        assert_eq!(
            verify(CLEARTEXT, "67656865696d", Some(b"geheim"), false, &a),
            Ok(())
        );
        assert!(verify(CLEARTEXT, "67656865696D", Some(b"geheim"), false, &a).is_err());
        let tls_tok = own_token(TLS_SHA3_512, None, &b).unwrap();
        assert_eq!(verify(TLS_SHA3_512, &tls_tok, None, true, &a), Ok(()));
        assert!(verify(TLS_SHA3_512, &tls_tok, None, false, &a).is_err());
        assert_eq!(verify(TLS_ANON, "", None, true, &a), Ok(()));
        assert!(verify(TLS_ANON, "", None, false, &a).is_err());
        assert!(verify(TLS_ANON, "x", None, true, &a).is_err());
        assert_eq!(
            verify("hmac_md6_64_256", "", Some(b"geheim"), false, &a),
            Err(HandshakeError::UnsupportedAuthMethod(
                "hmac_md6_64_256".into()
            ))
        );
    }

    #[test]
    fn choosing_auth() {
        let offer = s(&[TLS_SHA3_512, HMAC_SHA3_512]);
        let perl = s(&[TLS_SHA3_512, HMAC_SHA3_512, TLS_ANON, CLEARTEXT]);
        assert_eq!(choose_auth(&perl, &offer, false, true), Ok(HMAC_SHA3_512));
        assert_eq!(choose_auth(&perl, &offer, true, false), Ok(TLS_SHA3_512));
        assert_eq!(
            choose_auth(&perl, &offer, false, false),
            Err(HandshakeError::NoSecret)
        );
        // Pitfall (docs/protocol.md §1): hmac listed before tls_sha3_512 is picked under TLS and then cannot
        // be sent.
        let bad_order = s(&[HMAC_SHA3_512, TLS_SHA3_512]);
        assert!(matches!(
            choose_auth(&bad_order, &offer, true, true),
            Err(HandshakeError::UnsupportedSendAuth { .. })
        ));
        assert!(matches!(
            choose_auth(&s(&[CLEARTEXT]), &offer, false, true),
            Err(HandshakeError::NoCommonAuth(_))
        ));
        // A peer that accepts only TLS methods, without TLS: it requires certificates.
        assert_eq!(
            choose_auth(&s(&[TLS_SHA3_512]), &offer, false, true),
            Err(HandshakeError::PeerRequiresTls(TLS_SHA3_512.into()))
        );
        // An offer that contains cleartext still cannot send it.
        assert!(matches!(
            choose_auth(&s(&[CLEARTEXT]), &s(&[CLEARTEXT]), false, true),
            Err(HandshakeError::UnsupportedSendAuth { .. })
        ));
        assert_eq!(
            choose_auth(&perl, &s(&[TLS_ANON]), true, false),
            Ok(TLS_ANON)
        );
    }

    #[test]
    fn choosing_framing() {
        let ours = s(&["cbor", "json"]);
        assert_eq!(choose_framing(&s(&["json", "cbor"]), &ours), Ok("json"));
        assert_eq!(choose_framing(&s(&["storable", "cbor"]), &ours), Ok("cbor"));
        assert_eq!(
            choose_framing(&s(&["storable"]), &ours),
            Err(HandshakeError::PeerFramingsUnsupported("storable".into()))
        );
        assert!(matches!(
            choose_framing(&s(&["json"]), &s(&["cbor"])),
            Err(HandshakeError::NoCommonFraming { .. })
        ));
        assert!(matches!(
            choose_framing(&[], &ours),
            Err(HandshakeError::NoCommonFraming { .. })
        ));
        // A misconfigured local list containing storable still never sends it.
        assert!(choose_framing(&s(&["storable"]), &s(&["storable"])).is_err());
    }

    #[test]
    fn nonce_shape() {
        let n = new_nonce();
        assert_eq!(n.len(), 88);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&n)
            .unwrap();
        assert_eq!(raw.len(), NONCE_BYTES);
        assert_ne!(n, new_nonce());
    }
}
