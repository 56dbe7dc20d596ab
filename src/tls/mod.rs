//! TLS: the local name-constrained CA, per-host leaf minting and caching, upstream trust.
//!
//! Never writes a leaf key to disk, never mints for a host outside the CA's catalogue, and never
//! offers a way to skip upstream certificate verification.

mod ca;
mod leaf;
mod upstream;

use std::path::PathBuf;

pub use ca::{is_interceptable, LocalCa, INTERCEPTABLE_DOMAINS};
pub use leaf::LeafCache;
pub use upstream::upstream_client_config;

/// Why a TLS set-up step failed. Each names the file or host involved, because the person reading
/// it is fixing a path or a policy, not reading Rust.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a usable CA certificate or key: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("no local CA in {dir} (run `egress-guard ca init`)")]
    NoCa { dir: PathBuf },
    #[error(
        "`{host}` is outside the local CA's name constraints: egress-guard can only intercept \
         the AI API domains it was built with, so it cannot inspect this host"
    )]
    OutsideConstraints { host: String },
    #[error("could not mint a certificate for `{host}`: {reason}")]
    Mint { host: String, reason: String },
    #[error("{path}: no certificate found in this PEM file")]
    EmptyPem { path: PathBuf },
    #[error("{path}: bad PEM: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}
