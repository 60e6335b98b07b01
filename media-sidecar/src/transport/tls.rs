//! The one rustls client configuration both transports use: ring provider, TLS
//! 1.2 + 1.3 (QUIC negotiates 1.3), trusting either the configured CA file
//! alone or the system store.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use super::TransportError;

/// A client config without ALPN (each transport sets its own).
pub fn client_config(ca_cert: Option<&Path>) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| {
                    TransportError::Config(format!("cannot read CA file {}: {e}", path.display()))
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    TransportError::Config(format!(
                        "CA file {} is not valid PEM: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(TransportError::Config(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    TransportError::Config(format!(
                        "CA file {}: unusable certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TransportError::Config(format!(
                    "no usable system CA certificates ({} errors); set ca_cert",
                    found.errors.len()
                )));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// A config that trusts nothing: for the plain-`http://` HTTP/1.1 transport,
/// whose connector type still wants one.
pub fn empty_roots_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth()
}
