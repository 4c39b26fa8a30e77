//! `aemp gencert`: a new RSA key and self-signed certificate, made without running openssl.
//!
//! The result has the form of the reference's `aemp gencert` (which runs `openssl req -new
//! -nodes -x509 -newkey rsa:2048 -subj /CN=AnyEvent::MP -days 3650`): a node's `cert`
//! setting, accepted by `aemp::transport::tls::TlsIdentity::from_pem` and by OpenSSL.

use rsa::pkcs8::{EncodePrivateKey, LineEnding};

/// Validity period of generated certificates, as in the reference's `aemp gencert`.
const DAYS: i64 = 3650;

/// Subject (and issuer) common name of generated certificates, as in the reference.
const CN: &str = "AnyEvent::MP";

/// RSA modulus size of generated keys, as in the reference.
const RSA_BITS: usize = 2048;

/// Makes a new self-signed certificate and its private key as one PEM string (key first),
/// suitable as a node's `cert` setting: RSA 2048, SHA-256 signature, subject
/// `CN=AnyEvent::MP`, valid for 3650 days from now, `CA:TRUE` like the certificates of the
/// reference's `aemp gencert` (which runs `openssl req -x509`).
///
/// The key is PKCS#8 (`BEGIN PRIVATE KEY`), which both rustls and OpenSSL read. Generating
/// an RSA key takes a noticeable fraction of a second. The error is a message for the user.
pub fn gencert() -> Result<String, String> {
    let (key, cert) = generate()?;
    Ok(format!("{}{}", key.serialize_pem(), cert.pem()))
}

/// The key pair and the certificate of [`gencert`], before they are written as PEM.
fn generate() -> Result<(rcgen::KeyPair, rcgen::Certificate), String> {
    let msg = |e: &dyn std::fmt::Display| e.to_string();
    // ring (rcgen's backend) cannot generate RSA keys, so the pure-Rust rsa crate makes the
    // key and rcgen signs the certificate with it.
    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS).map_err(|e| msg(&e))?;
    let pkcs8 = rsa_key.to_pkcs8_pem(LineEnding::LF).map_err(|e| msg(&e))?;
    let key = rcgen::KeyPair::from_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| msg(&e))?;

    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, CN);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(DAYS);
    params.serial_number = Some(rcgen::SerialNumber::from(random_serial().to_vec()));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).map_err(|e| msg(&e))?;
    Ok((key, cert))
}

/// A random positive 128-bit serial number in minimal DER form (RFC 5280 §4.1.2.2 allows up
/// to 20 octets and wants it unique per issuer; randomness gives that for self-signed use).
fn random_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::random();
    // Clear the sign bit (serials are positive) and set a low bit of the first octet so that
    // the encoding needs no leading zero octet and is never zero.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use x509_cert::der::oid::AssociatedOid;
    use x509_cert::der::{Decode, DecodePem};

    #[tokio::test]
    async fn gencert_has_the_reference_parameters_and_works_as_identity() {
        let pem = gencert().expect("gencert");

        // Key first, PKCS#8, RSA 2048.
        let end = "-----END PRIVATE KEY-----\n";
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let split = pem.find(end).expect("key end") + end.len();
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem[..split]).expect("RSA PKCS#8 key");
        assert_eq!(key.size() * 8, 2048);

        // Then the one certificate: self-signed CN=AnyEvent::MP, CA:TRUE, 3650 days from now.
        let cert = x509_cert::Certificate::from_pem(&pem[split..]).expect("certificate");
        let tbs = &cert.tbs_certificate;
        assert_eq!(tbs.subject.to_string(), "CN=AnyEvent::MP");
        assert_eq!(tbs.issuer, tbs.subject);
        let from = tbs.validity.not_before.to_unix_duration().as_secs();
        let to = tbs.validity.not_after.to_unix_duration().as_secs();
        assert_eq!(to - from, 3650 * 86_400);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            from <= now && now <= from + 600,
            "not_before {from} is not about now {now}"
        );
        let serial = tbs.serial_number.as_bytes();
        assert_eq!(serial.len(), 16);
        assert!(serial[0] & 0x80 == 0 && serial[0] != 0);
        let constraints = tbs
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == x509_cert::ext::pkix::BasicConstraints::OID)
            .expect("basic constraints");
        let constraints =
            x509_cert::ext::pkix::BasicConstraints::from_der(constraints.extn_value.as_bytes())
                .expect("basic constraints value");
        assert!(constraints.ca, "CA:TRUE like openssl req -x509");

        // Two nodes that have only this certificate (no secret) authenticate each other by
        // TLS and exchange a message.
        let node = |name: &str| {
            aemp::Config::builder()
                .norc(true)
                .nodeid(name)
                .binds(["127.0.0.1:0"])
                .cert(pem.clone())
                .build()
                .expect("config with the generated certificate")
        };
        let a = aemp::Node::configure(node("gencert-a"))
            .await
            .expect("node a");
        let b = aemp::Node::configure(node("gencert-b"))
            .await
            .expect("node b");
        a.connect(b.listen_addrs()[0]).expect("connect");
        assert!(
            a.wait_up(b.id(), Duration::from_secs(20)).await,
            "TLS nodes with the generated certificate did not connect"
        );
        let echo = b.port_with(|cx, m| {
            let reply: aemp::PortId = m[1].as_str().unwrap_or_default().parse()?;
            cx.snd(&reply, aemp::msg!["pong"]);
            Ok(())
        });
        let answer =
            tokio::time::timeout(Duration::from_secs(20), a.cal(&echo, aemp::msg!["ping"]))
                .await
                .expect("cal hung")
                .expect("cal over TLS");
        assert_eq!(answer, aemp::msg!["pong"]);
    }

    #[test]
    fn serials_are_positive_and_minimal() {
        for _ in 0..1000 {
            let s = random_serial();
            assert!(s[0] & 0x80 == 0 && s[0] & 0x01 == 1);
        }
        assert_ne!(random_serial(), random_serial());
    }
}
