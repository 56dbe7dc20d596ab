//! Per-host leaf certificates, minted on demand and kept only in memory.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{is_interceptable, LocalCa, TlsError};

/// Leaves are valid for this long; the cache re-mints well before the end.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
const REMINT_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A bounded LRU of ready-to-use server TLS configurations, one per intercepted host.
///
/// Minting is the slow part of a first connection (a P-256 key and a signature, about a
/// millisecond); the cache makes later connections to the same host free.
pub struct LeafCache {
    ca: Arc<LocalCa>,
    cache: Mutex<LruCache<String, (Instant, Arc<ServerConfig>)>>,
}

impl LeafCache {
    pub fn new(ca: Arc<LocalCa>, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            ca,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// The server configuration presenting a leaf for `host` (ALPN h2 and http/1.1), minting it
    /// if needed. Refuses hosts outside the CA's name constraints.
    pub fn get_or_mint(&self, host: &str) -> Result<Arc<ServerConfig>, TlsError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if !is_interceptable(&host) {
            return Err(TlsError::OutsideConstraints { host });
        }
        if let Some((minted, config)) = self.lock().get(&host) {
            if minted.elapsed() < REMINT_AFTER {
                return Ok(config.clone());
            }
        }
        let config = Arc::new(self.mint(&host)?);
        self.lock().put(host, (Instant::now(), config.clone()));
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, (Instant, Arc<ServerConfig>)>> {
        // A poisoned cache only means another thread panicked mid-insert; the map is still valid.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, TlsError> {
        let mint_error = |e: rcgen::Error| TlsError::Mint {
            host: host.to_string(),
            reason: e.to_string(),
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(mint_error)?;
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(mint_error)?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + LEAF_VALIDITY;
        let leaf = params
            .signed_by(&key, &self.ca.issuer, &self.ca.key)
            .map_err(mint_error)?;

        let chain = vec![
            leaf.der().clone(),
            CertificateDer::from(self.ca.cert_der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_outside_the_constraints_is_never_minted() {
        let dir = std::env::temp_dir().join(format!("eg-leaf-{}", uuid::Uuid::now_v7()));
        let ca = Arc::new(LocalCa::load_or_create(&dir).expect("CA"));
        let cache = LeafCache::new(ca, 4);
        assert!(cache.get_or_mint("api.anthropic.com").is_ok());
        let refused = cache.get_or_mint("www.mybank.example");
        assert!(
            matches!(refused, Err(TlsError::OutsideConstraints { ref host }) if host == "www.mybank.example")
        );
        assert!(cache.get_or_mint("anthropic.com.evil.example").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_cache_hands_back_the_same_leaf_for_a_host() {
        let dir = std::env::temp_dir().join(format!("eg-leaf-{}", uuid::Uuid::now_v7()));
        let ca = Arc::new(LocalCa::load_or_create(&dir).expect("CA"));
        let cache = LeafCache::new(ca, 1);
        let first = cache.get_or_mint("api.openai.com").expect("mint");
        let again = cache.get_or_mint("API.openai.com").expect("cached");
        assert!(Arc::ptr_eq(&first, &again));
        // Capacity 1: another host evicts it, so the next one is fresh.
        cache.get_or_mint("api.anthropic.com").expect("mint");
        let fresh = cache.get_or_mint("api.openai.com").expect("mint");
        assert!(!Arc::ptr_eq(&first, &fresh));
        let _ = std::fs::remove_dir_all(dir);
    }
}
