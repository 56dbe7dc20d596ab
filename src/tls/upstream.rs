//! Upstream trust: webpki roots + the system's roots + each `--upstream-ca`. Always verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::TlsError;

/// The client configuration used for every upstream connection. There is deliberately no way to
/// turn verification off: an extra root (`--upstream-ca`) is the only knob, for corporate TLS
/// inspection in front of us and for tests.
pub fn upstream_client_config(extra_roots: &[PathBuf]) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // A system store that fails to load (no bundle on a minimal container) is not fatal:
    // webpki's roots still cover the public API hosts.
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipping part of the system trust store");
    }
    roots.add_parsable_certificates(native.certs);
    for path in extra_roots {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::BadPem {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(config)
}

/// Every certificate in a PEM file; an error if it holds none.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::EmptyPem {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}
