//! A throwaway PKI for loopback TLS: one CA, one server certificate.

use std::path::{Path, PathBuf};

/// PEM files of a throwaway CA and of a server certificate (and its key)
/// for `localhost` and `127.0.0.1` signed by it.
pub struct Pki {
    /// The CA certificate: what clients are told to trust.
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// Writes a fresh CA and server certificate into `dir` (`ca.pem`,
/// `cert.pem`, `key.pem`).
pub fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "voxline test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("a self-signed CA");
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().expect("a server key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server certificate parameters");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("a server certificate");

    let pki = Pki {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("cert.pem"),
        key_pem: dir.join("key.pem"),
    };
    for (path, pem) in [
        (&pki.ca_pem, ca_cert.pem()),
        (&pki.cert_pem, leaf_cert.pem()),
        (&pki.key_pem, leaf_key.serialize_pem()),
    ] {
        std::fs::write(path, pem).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    pki
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_a_server_certificate() {
        let dir = crate::temp_dir("pki");
        let pki = make_pki(&dir);
        for p in [&pki.ca_pem, &pki.cert_pem] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        }
        let key = std::fs::read_to_string(&pki.key_pem).unwrap();
        assert!(key.contains("PRIVATE KEY"), "{key}");
        assert_ne!(
            std::fs::read(&pki.ca_pem).unwrap(),
            std::fs::read(&pki.cert_pem).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
