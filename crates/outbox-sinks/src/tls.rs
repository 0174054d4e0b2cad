//! TLS to brokers: the public (Mozilla) roots, or the CAs of a PEM file (`ca_file`).

use outbox_core::conf::Section;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificates of a PEM file.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("'{shown}': {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("'{shown}': {e}"))?;
    if certs.is_empty() {
        return Err(format!("'{shown}' holds no certificate"));
    }
    Ok(certs)
}

/// Reads the `ca_file` key: a PEM file that must hold at least one certificate.
pub fn read_ca_file(s: &mut Section<'_>) -> Option<PathBuf> {
    let path = PathBuf::from(s.string("ca_file")?);
    match certificates(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            s.issue("ca_file", e);
            None
        }
    }
}

/// A client config trusting the CAs of `ca_file`, else the public roots; ring for crypto.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let (added, _) = roots.add_parsable_certificates(certificates(path)?);
            if added == 0 {
                return Err(format!("'{}' holds no usable CA", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Makes ring the process's default crypto provider, for client libraries that build their
/// own TLS config from it. Harmless when one is already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The PEM bytes of `ca_file`, for client libraries that take them.
pub fn ca_bytes(ca_file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(ca_file).map_err(|e| format!("'{}': {e}", ca_file.display()))
}
